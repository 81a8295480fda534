from pipeline.cli import main

raise SystemExit(main(["sandbox", *__import__("sys").argv[1:]]))
