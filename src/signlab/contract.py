"""The run contract: every name that one part of signlab writes and another reads back (MLflow
tags, params and metrics, Optuna user attributes, artifacts, registry names and aliases)."""

from __future__ import annotations

# --- MLflow run tags -------------------------------------------------------------------
ROLE_TAG = "signlab.role"  # what a run is: one of the ROLE_* values
ROLE_STUDY = "study"  # a study's parent run, one per study, shared by its workers
ROLE_TRIAL = "trial"  # one Optuna trial, nested under its study's parent
ROLE_REFIT = "refit"  # the chosen trial retrained on the whole training file, one per seed
ROLE_SESSION = "session"  # the run `mlflow run` made for a later session of a study
ROLE_REPORT = "report"
ROLE_REFERENCES = "references"  # `mlflow run . -e reference` when it holds several rows
STUDY_TAG = "study"  # the study's name, on its parent, trials and refits
FAMILY_TAG = "family"  # cnn, mlp or knn
PRESET_TAG = "preset"  # a published preset's name, or "study"
TRIAL_NUMBER_TAG = "trial_number"
TRIAL_STATE_TAG = "trial_state"  # follows the Optuna trial: RUNNING, COMPLETE, PRUNED, FAIL
WORKER_TAG = "signlab.worker"  # host:pid of the process that ran a trial, training, refit or reference
THREADS_TAG = "signlab.threads"  # threads the training computed with (TensorFlow's intra-op pool, or BLAS's):
# a seed's figures depend on it (the order of floating-point sums), so two runs of one seed may differ by it
REPAIRED_TAG = "signlab.repaired"  # a run left RUNNING by a dead process, ended by another: why
SIMULATED_TAG = "signlab.simulated"  # "true" on a trial run of a `simulate:` study: nothing was trained
CLASSIFIER_URI_TAG = "signlab.classifier_uri"  # the run's letter classifier (the model users get)
BEST_TAG_PREFIX = "best."  # on the parent: the best trial's params, as best.<param>
BEST_TRIAL_TAG = "best.trial_number"
BEST_RUN_TAG = "best.mlflow_run_id"
REFIT_TRIAL_TAG = "refit.trial_number"  # on the parent: the trial its refits retrained
REFIT_PRIMARY_RUN_TAG = "refit.primary_run_id"
REFIT_RUNS_TAG = "refit.run_ids"  # on the parent: the latest refit's runs, comma-separated, primary first
REFIT_SEED = "refit_seed"  # a refit's seed (tag and param)
REFIT_PRIMARY_TAG = "refit_primary"  # "true" on the refit with the first seed: the one promoted
REFIT_SPEC_TAG = "refit.spec"  # digest of the refit's spec (epochs, LR schedule, ...): what makes it the same refit
REFERENCE_ROW_TAG = "reference"  # a reference run's row (nn1 ... cnn3_aug, knn)
SEED_TAG = "seed"
REFERENCE_SETTINGS_TAG = "reference.settings"  # row, seed, epochs, data and spec digests: what makes it the same run
QUICK_TAG = "signlab.quick"  # "true" on a run trained on a subset or tested on a capped test split
ROLE_CONFIRM = "confirm"  # a top trial retrained with a new seed on the same split (study file `confirm:`)
CONFIRM_SEED = "confirm_seed"  # a confirm run's seed (tag and param)
SOURCE_RUN_TAG = "source_run"  # on a registered model version: the run it was registered from
NOTE_TAG = "mlflow.note.content"  # MLflow's run description: the parent's note on how to read the study
IMPORTANCE_CAUTION_TAG = "importance.caution"  # on the parent: why its importances are not yet reliable, or "none"
NEAR_TIES_TAG = "signlab.near_ties"  # on the parent: the trials validation does not tell from its choice
# (inside the choice's 95% interval over validation photos), comma-separated, or "none"
SESSION_EXPERIMENT_TAG = "signlab.last_session"  # an experiment tag: the write that proves the store takes writes

# --- MLflow run params (read back by the report and the registry) ------------------------
SEED_PARAM = "seed"
SUBSET_PARAM = "subset"  # images per class (0: all)
N_TEST_PARAM = "n_test"  # test images the run was scored on
VAL_STRATEGY_PARAM = "val_strategy"  # grouped, random, or none (the whole file)
VAL_FRACTION_PARAM = "val_fraction"
OBJECTIVES_PARAM = "objectives"  # on the parent: the study's objectives, comma-separated
EFFECTIVE_SUFFIX = ".effective"  # <param>.effective: the value used, where an entry point logged another first
# the parent's params that define a study apart from its name, seed and stores: studies equal in
# these but the seed are one study judged over seeds in the report
STUDY_DEFINITION_PARAMS = ("family", OBJECTIVES_PARAM, "directions", "sampler", "sampler_seed", "pruner",
                           "max_epochs", VAL_STRATEGY_PARAM, VAL_FRACTION_PARAM, SUBSET_PARAM, "space", "fixed")

# --- Optuna user attributes ---------------------------------------------------------------
RUN_ATTR = "mlflow_run_id"  # on a trial: its MLflow run
RUN_URL_ATTR = "mlflow_run_url"  # on a trial: its run's page, where the tracking URI is an http(s) server
PARENT_ATTR = "mlflow_parent_run_id"  # on a study: its parent run
CONFIRM_ATTR_PREFIX = "confirm."  # on a study: confirm.<trial number> -> the confirm runs' validation accuracies
CHOSEN_ATTR = "chosen_trial"  # on a study: the trial it chose (ties and `confirm` included), for every reader
POST_SEARCH_CLAIM_ATTR = "post_search_claim"  # on a study: {trials, by} while a worker confirms or refits
BEST_EPOCH_ATTR = "best_epoch"  # on a trial: the epoch whose weights it kept (also a metric)
LR_SCHEDULE_ATTR = "lr_schedule"  # on a trial: the learning rate of each epoch, for its refit
SAME_AS_ATTR = "same_params_as"  # on a trial not trained again: the earlier trial with its params
PRUNED_ATTR = "pruned_before_training"  # on a trial pruned before it trained: why (over max_params)
DATA_ATTR = "data"  # on a study: its data settings (subset, validation, seed), which a resume must match
BRACKETS_ATTR = "hyperband_brackets"  # on a study: what Hyperband draws trials' brackets from ("seed-<seed>";
# absent in studies stored before 2026-12-05, whose brackets Optuna draws from the study's name)

# --- MLflow metrics ---------------------------------------------------------------------
VAL_ACCURACY = "final_val_accuracy"  # the validation accuracy of the epoch whose weights are kept
VAL_AUG_ACCURACY = "final_val_aug_accuracy"
VAL_LOSS = "final_val_loss"  # the validation loss of that epoch: breaks ties in validation accuracy
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # suffixes: test_accuracy_ci_low ... a 95% interval resampling photos
TEST_ACCURACY = "test_accuracy"  # reported, never used to choose
TEST_F1 = "test_f1_macro"
TEST_AUG_ACCURACY = "test_aug_accuracy"
N_PARAMS = "n_params"
LATENCY_MS = "latency_ms"
TRAIN_SECONDS = "train_seconds"
EPOCHS_RUN = "epochs_run"
SOURCE_VAL_ACCURACY = "source_val_accuracy"  # on a refit: the validation accuracy of the trial it retrains
REFIT_PREFIX = "refit_test_accuracy_"  # on the parent: _mean, _std, _min, _max over the refits
REFIT_COUNT = "refit_n"
N_TRIALS_METRIC = "n_trials"  # on the parent: its trials so far (also n_complete, n_pruned, n_failed)
N_COMPLETE_METRIC = "n_complete"
TRIALS_ADDED_METRIC = "trials_added"  # on a session run (a resumed study): the trials that session added
IMPORTANCE_PREFIX = "importance."  # on the parent: importance.<param>, fANOVA over the complete trials
CONFIRM_PREFIX = "confirm_val_accuracy_"  # on the parent: <mean|std>.<trial number> over a trial's confirm runs
# a study objective (study file) -> the metric of a trial's run that holds its value
OBJECTIVE_METRIC = {"val_accuracy": VAL_ACCURACY, "val_aug_accuracy": VAL_AUG_ACCURACY, "n_params": N_PARAMS}

# --- Logged models and the registry -----------------------------------------------------
MODEL_ARTIFACT = "model"  # the model in its own flavour (Keras or scikit-learn)
CLASSIFIER_ARTIFACT = "classifier"  # the letters pyfunc: what `predict`, serving and the registry use
PREDICTIONS_ARTIFACT = "test_predictions.csv"  # per test image: row, group, true and predicted letter, probability
MODEL_NAMES = {"cnn": "sign-mnist-cnn", "mlp": "sign-mnist-mlp"}  # registered model per family
CHAMPION, CHALLENGER = "champion", "challenger"  # registry aliases
DEFAULT_MODEL_URI = f"models:/{MODEL_NAMES['cnn']}@{CHAMPION}"


# --- Names inside MLflow search strings -------------------------------------------------
def tag_key(name: str) -> str:
    """A tag in an MLflow filter or order_by string: tags.`name` (quoted: names hold dots)."""
    return f"tags.`{name}`"


def metric_key(name: str) -> str:
    """A metric in an MLflow filter or order_by string: metrics.`name`."""
    return f"metrics.`{name}`"
