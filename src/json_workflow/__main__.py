from json_workflow.cli import main

main()
