"""Start GridAR Desktop (the same app as the `gridar-desktop` command)."""
import sys

from gridar_desktop.launcher import main

if __name__ == "__main__":
    sys.exit(main())
