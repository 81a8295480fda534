from pipeline.cli.entry import run_and_exit

run_and_exit()
