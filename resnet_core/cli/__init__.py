"""The command line, one module per subcommand (``python -m resnet_core --help``); main.py builds the parser."""
