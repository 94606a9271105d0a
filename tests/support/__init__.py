"""Helpers the tests share: scripted booking systems (plant), real servers and accounts, daemons,
the independent reference fold, the discover corpus and the file/HTTP sources. No tests here."""
