"""The Asterisk Manager Interface: a sans-IO codec and a trio client."""
