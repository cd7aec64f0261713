from scheduler_sdk.cli.main import main

main()
