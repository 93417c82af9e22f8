"""`signlab dashboard`: optuna-dashboard on a study storage, opened as signlab opens it
(so a wrong URL or a damaged file is one clear line), bound to 127.0.0.1 by default,
read-only unless told otherwise, and answering only to the host names it is meant to have."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from signlab.errors import UserError
from signlab.search.storage import open_storage
from signlab.serving.server import LOOPBACK
from signlab.stores import redact, sqlite_file

READ_METHODS = {"GET", "HEAD"}  # every page and API call the dashboard makes to show studies


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:8080` -> `::1`, `Foo.:80` -> `foo`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0].rstrip(".") if header.count(":") == 1 else header.rstrip(".")


def guard(app: Callable, allowed_hosts: Iterable[str], allow_writes: bool = False) -> Callable:
    """optuna-dashboard behind two checks: a Host header naming one of `allowed_hosts` (a web
    page cannot reach a loopback server through a DNS name it controls: DNS rebinding), and,
    unless `allow_writes`, only GET and HEAD (no deleting, renaming or annotating studies)."""
    allowed = {host_name(h) for h in allowed_hosts}

    def refuse(start_response: Callable, status: str, reason: str) -> list[bytes]:
        body = json.dumps({"reason": reason}).encode()  # the dashboard shows `reason` of a failed call
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if host_name(environ.get("HTTP_HOST", "")) not in allowed:
            return refuse(start_response, "403 Forbidden", "this dashboard does not answer to that host name "
                          "(signlab dashboard --allowed-hosts NAME adds one)")
        if not allow_writes and environ.get("REQUEST_METHOD", "GET").upper() not in READ_METHODS:
            return refuse(start_response, "403 Forbidden", "the dashboard is read-only "
                          "(signlab dashboard --allow-writes lets it delete, rename and annotate studies)")
        return app(environ, start_response)

    return guarded


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as optuna-dashboard's own command serves (a page asks for
    several things at once)."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        """No line per request."""


def serve_dashboard(storage_url: str, host: str, port: int, echo: Callable[[str], None] = print, *,
          allow_writes: bool = False, allowed_hosts: Iterable[str] = ()) -> None:
    """Serve optuna-dashboard for the studies in `storage_url` on http://host:port/ until
    Ctrl-C or SIGTERM, read-only unless `allow_writes`, to requests addressed to a loopback
    name, the address it listens on or one of `allowed_hosts`. A SQLite file that does not
    exist is refused (opening it would create an empty database), as is a port already taken."""
    import optuna_dashboard

    database = sqlite_file(storage_url)
    if database is not None and not database.is_file():
        raise UserError(f"no study storage at {database} (SQLite file not found): run a study first, "
                        "or pass --storage (or $SIGNLAB_STORAGE) naming the one it used")
    names = {*LOOPBACK, *allowed_hosts} | ({host} if host not in ("0.0.0.0", "::", "") else set())
    app = guard(optuna_dashboard.wsgi(open_storage(storage_url)), names, allow_writes)
    try:
        httpd = make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                        "(is another server using it? choose one with --port)") from None
    if host not in LOOPBACK:
        echo(f"warning: listening on {host}: optuna-dashboard has no authentication; anyone who can reach "
             "this port can read the studies" + (", annotate and delete them" if allow_writes else ""))
    echo(f"optuna-dashboard for {redact(storage_url)} on http://{host}:{port}/ (Ctrl-C stops it)"
         + ("" if allow_writes else ", read-only (--allow-writes to delete, rename or annotate studies)"))
    with httpd:
        try:
            httpd.serve_forever()
        except KeyboardInterrupt as exc:
            exc.add_note("dashboard stopped")
            raise
