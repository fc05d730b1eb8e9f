"""`python -m stepscope.reproduce --model M --out DIR`: the same as `stepscope reproduce`."""

from stepscope.reproduce.command import main

raise SystemExit(main())
