"""[notify]: tell the owner, through Apprise, when something needs them (decide.py: what and when,
pure; send.py: the blocking Apprise call in a thread; watch.py: the daemon's loop that observes)."""
