"""Run the ardmzip CLI of the checkout at /tmp/old (the session-start revision), bypassing the
editable install's import hook, which would otherwise always load /work/main."""
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, "/tmp/old")
import ardmzip
assert ardmzip.__file__.startswith("/tmp/old"), ardmzip.__file__
from ardmzip.cli import main
sys.argv = ["ardmzip"] + sys.argv[1:]
main()
