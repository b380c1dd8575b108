"""Music as data: note-states and melody tokens, keys, MIDI files, piano rolls and sound."""
