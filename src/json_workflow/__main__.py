from json_workflow.cli import main

main(prog_name="json-workflow")
