from dialer.cli import run

run()
