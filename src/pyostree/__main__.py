from pyostree.cli.main import main

raise SystemExit(main())
