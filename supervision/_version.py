"""The one place the version of thespian-otp is written (setup.cfg reads it from here)."""

__version__ = "0.1.0"
