"""Music as data: note-states and melody tokens, keys, MIDI files, piano rolls and sound; and the
music theory the reward rules and the statistics share: four-part harmony
(:mod:`musicgym.music.harmony`) and a melody's shape (:mod:`musicgym.music.melody`)."""
