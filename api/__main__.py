"""`python -m api ...` is `stratflow ...`: how `stratflow serve` starts the runs it supervises
(api/server/runs.py) with the interpreter it runs on, whatever is on PATH."""

from api.cli import main

if __name__ == "__main__":
    main()
