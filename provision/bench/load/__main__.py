import sys

from provision.bench.load import main

sys.exit(main())
