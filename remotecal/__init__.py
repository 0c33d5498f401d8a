"""remotecal's composition root: the `remotecal` command, its subcommands' parsers, the
logging set-up and the demo.

    remotecal/            imports every package below; nothing imports it
      cli.py              the `remotecal` command: every subcommand's parser, the exits
      commands.py         what each subcommand does, calling into the packages
      logs.py             logging set-up (one place)
      demo/               `remotecal demo`: the whole chain on one machine
    gateway/  pipelines/  dashboards/  firmware_bridge/
                          never import remotecal/; pipelines, dashboards and firmware_bridge
                          import from gateway/ only its ground floor (tests/test_layering.py)
"""

from gateway import __version__

__all__ = ["__version__"]
