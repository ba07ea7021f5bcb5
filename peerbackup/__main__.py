from peerbackup.cli.main import main

raise SystemExit(main())
