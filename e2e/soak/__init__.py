"""`make soak`: many conversations through the emulator for a long time, under faults, with nothing lost."""
