from signlab.cli import main

main()
