from flowlib.cli import run

run()
