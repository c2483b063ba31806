"""Following calls through AMI events: the call tracker and the agents board."""
