import io

from dialer.cli import main


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def test_help_lists_usage():
    status, out, err = run_cli("--help")
    assert status == 0
    assert out.startswith("usage: dialer")
    assert err == ""


def test_unknown_command_is_one_line_and_status_2():
    status, out, err = run_cli("no-such-command")
    assert status == 2
    assert out == ""
    assert err.startswith("dialer: ") and err.count("\n") == 1
    assert "no-such-command" in err


def test_no_arguments_prints_help_and_fails():
    status, out, _ = run_cli()
    assert status == 2
    assert "usage: dialer" in out
