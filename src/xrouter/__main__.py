from xrouter.cli import main

raise SystemExit(main())
