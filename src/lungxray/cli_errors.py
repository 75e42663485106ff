"""How the command line reports a LungxrayError: one line, exit code 2, no traceback, parameters named as flags.

Library messages name parameters as Python keywords (`masks=provided`, see errors.py); `flag_names` rewrites
them into the invoked command's flags. Every command group (`lungxray`, `lungxray data`, `lungxray segment`) is
a `_Group`, so the innermost one reports the error with its own command's flags.
"""

from __future__ import annotations

import re

import click

from .errors import LungxrayError


def _options(command: click.Command) -> dict[str, str]:
    """Parameter name -> long flag, for `command` and every command under it."""
    flags: dict[str, str] = {}
    for param in command.params:
        long = [o for o in param.opts if o.startswith("--")]
        if isinstance(param, click.Option) and long and param.name:
            flags.setdefault(param.name, long[0])
    for sub in getattr(command, "commands", {}).values():
        for name, flag in _options(sub).items():
            flags.setdefault(name, flag)
    return flags


def flag_names(message: str, flags: dict[str, str]) -> str:
    """Rewrite the library's `name=value` / `name=True` into the CLI's `--flag value` / `--flag` (see errors.py)."""
    def swap(m: re.Match) -> str:
        flag = flags.get(m.group(1))
        if flag is None:
            return m.group(0)
        return flag if m.group(2) == "True" else f"{flag} {m.group(2)}".rstrip()

    # A parameter starts the message or follows a space, "(" or "`": never inside a path such as runs/seed=1.
    return re.sub(r"(?:^|(?<=[\s(`]))([a-z][a-z0-9_]*)=(True\b|[^\s,;)]*)", swap, message)


class _Group(click.Group):
    """Turns LungxrayError into a one-line message (naming flags, not parameters) and exit code 2, no traceback."""

    group_class = type  # subgroups (`lungxray data ...`) are _Groups too

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta["lungxray.command"] = cmd  # meta is shared down the context tree: the innermost command wins
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LungxrayError as exc:
            command = ctx.meta.get("lungxray.command", self)
            click.echo(f"error: {flag_names(str(exc), _options(command))}", err=True)
            ctx.exit(2)
        except OSError as exc:
            # A write that failed (disk full, permissions) after the checks: one line, never a traceback.
            command = ctx.meta.get("lungxray.command", self)
            where = f"{_final_name(str(exc.filename))}: " if exc.filename else ""
            again = "rerun with --resume" if "resume" in _options(command) else "rerun"
            click.echo(f"error: {where}{exc.strerror or exc} (outputs written so far are kept; fix this and "
                       f"{again})", err=True)
            ctx.exit(2)


_TEMP = re.compile(r"^(?P<dir>.*/)?\.(?P<name>.+)\.[^./]+\.tmp$")


def _final_name(path: str) -> str:
    """The file a failed atomic write was for (`utils.atomic_write_bytes` writes `.NAME.XXXX.tmp` beside it)."""
    m = _TEMP.match(path)
    return f"{m['dir'] or ''}{m['name']}" if m else path
