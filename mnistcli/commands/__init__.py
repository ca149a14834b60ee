"""The commands of `mnistcli`, one module each: parse options, call the core, render with `ui`."""
