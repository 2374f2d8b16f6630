from genba.cli import main

raise SystemExit(main())
