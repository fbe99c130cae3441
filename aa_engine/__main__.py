from aa_engine.cli import main

raise SystemExit(main())
