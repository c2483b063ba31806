import argparse
import io

import pytest

from dialer.cli import FORMATS, build_parser, main


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


def leaf_commands(parser=None, words=()):
    """(words, parser) of every command ``dialer --help`` leads to, e.g. (("web", "user", "list"), p)."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.format_help()  # adds the arguments built on first use
        yield words, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaf_commands(sub, (*words, name))


def _format(parser):
    return next((a for a in parser._actions if "--format" in a.option_strings), None)


# Every command that prints data (rows, documents, streams) rather than one line
# saying what it did.
DATA_COMMANDS = {
    ("campaign", "list"), ("campaign", "show"), ("status",), ("report",), ("ami", "events"),
    ("web", "user", "list"), ("web", "token", "list"), ("rules", "show"),
}


def test_every_command_that_prints_data_takes_format():
    leaves = dict(leaf_commands())
    assert DATA_COMMANDS <= set(leaves)
    missing = [" ".join(w) for w in DATA_COMMANDS if _format(leaves[w]) is None]
    assert not missing, f"no --format: {missing}"


@pytest.mark.parametrize("words", sorted(w for w, p in leaf_commands() if _format(p) is not None),
                         ids=" ".join)
def test_format_uses_the_shared_names(words):
    fmt = _format(dict(leaf_commands())[words])
    # a subset of table, json, csv, jsonl, in that order
    assert list(fmt.choices) == [f for f in FORMATS if f in fmt.choices]
    # table is the default wherever a table is offered (report: also with --attempts, whose default is csv)
    assert "table" not in fmt.choices or fmt.default in ("table", None)
    assert "json" in fmt.choices


def test_lists_of_users_and_tokens_as_data(sqlite_url):
    import json

    status, out, err = run_cli("--db", sqlite_url, "web", "user", "list")
    assert (status, err) == (0, "") and out.startswith("no users")
    assert run_cli("--db", sqlite_url, "web", "user", "list", "--format", "json")[1] == "[]\n"
    assert run_cli("--db", sqlite_url, "web", "token", "add", "crm", "--role", "viewer")[0] == 0
    tokens = json.loads(run_cli("--db", sqlite_url, "web", "token", "list", "--format", "json")[1])
    assert tokens == [{"name": "crm", "role": "viewer", "state": "active", "last_used_at": None}]
    assert run_cli("--db", sqlite_url, "web", "token", "list", "--format", "csv")[1] == \
        "name,role,state,last_used_at\ncrm,viewer,active,\n"
    table = run_cli("--db", sqlite_url, "web", "token", "list")[1].splitlines()
    assert table[0].split() == ["name", "role", "state", "last_used_at"]
    assert table[1].split() == ["crm", "viewer", "active", "never", "used"]
