"""Manage console users (partner, supervisor, qa, admin) and agents.

``callshield users add NAME --role ROLE``: the password is prompted (twice)
when a terminal is attached, else generated and printed once; ``--role
agent`` creates an agent and prints its token once. ``users list``, ``users
remove NAME``, ``users passwd NAME`` (a new password or agent token). Works on
the console's store (the PostgreSQL database of ``[console] store``, else the
SQLite file in the data directory), also while the console runs.
"""

from __future__ import annotations

import argparse
import getpass
import sys

ROLE_CHOICES = ("partner", "supervisor", "qa", "admin", "agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="the console's data directory (default: [console] data_dir, else the callshield data directory)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a user or an agent")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLE_CHOICES)
    _secret_options(add)
    sub.add_parser("list", help="list users and agents")
    remove = sub.add_parser("remove", help="remove a user or an agent")
    remove.add_argument("name")
    passwd = sub.add_parser("passwd", help="set a new password (or a new agent token)")
    passwd.add_argument("name")
    _secret_options(passwd)


def _secret_options(parser: argparse.ArgumentParser) -> None:
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--generate", action="store_true", help="generate the password and print it once (default without a terminal)")
    how.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")


def run(args: argparse.Namespace) -> int:
    from cli.commands.console import console_config
    from console.store import Store

    config = console_config(args)
    store = Store.open(config.store_location)
    try:
        if args.action == "list":
            rows = store.list_users()
            if not rows:
                print("no users yet: callshield users add NAME --role supervisor", file=sys.stderr)
            for row in rows:
                print(f"{row.name}\t{row.role}\t{row.created_at}")
        elif args.action == "remove":
            store.remove_user(args.name)
            store.audit("cli", "user_removed", None, args.name)
            print(f"removed {args.name}")
        elif args.action == "add":
            secret = _chosen_secret(args, agent=args.role == "agent")
            result = store.add_user(args.name, args.role, secret)
            store.audit("cli", "user_added", None, f"{args.name} as {args.role}")
            _show(args.name, args.role, result, shown=secret is None)
        else:
            is_agent = any(r.name == args.name and r.role == "agent" for r in store.list_users())
            secret = _chosen_secret(args, agent=is_agent)
            result = store.set_password(args.name, secret)
            store.audit("cli", "password_set", None, args.name)
            _show(args.name, "agent" if is_agent else "user", result, shown=secret is None)
    finally:
        store.close()
    return 0


def _chosen_secret(args: argparse.Namespace, *, agent: bool) -> str | None:
    """The password the operator chose, or None to generate one."""
    from console.errors import BadRequest

    if agent or args.generate:
        return None
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise BadRequest("no password on standard input", code="weak_password")
        return line
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(f"password for {args.name} (empty: generate one): ")
    if not first:
        return None
    if getpass.getpass("again: ") != first:
        raise BadRequest("the two passwords differ", code="password_mismatch")
    return first


def _show(name: str, role: str, secret: str, *, shown: bool) -> None:
    if role == "agent":
        print(f"agent {name}: token {secret}")
        print("  shown once; give it to the agent:  callshield agent --agent-id " + name + " --token TOKEN  (or [agent] token_file)")
    elif shown:
        print(f"{name} ({role}): password {secret}")
        print("  shown once; they sign in at the console's address, e.g. http://127.0.0.1:8750/")
    else:
        print(f"{name} ({role}): password set")
