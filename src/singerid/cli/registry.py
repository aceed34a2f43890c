"""Command registry: `@command` registers `cmd_NAME` as the `NAME` subcommand."""
COMMANDS = {}


def command(fn):
    COMMANDS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn
