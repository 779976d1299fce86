from parity.cli import run

run()
