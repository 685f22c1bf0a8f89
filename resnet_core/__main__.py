import sys

from resnet_core.cli.main import main

sys.exit(main())
