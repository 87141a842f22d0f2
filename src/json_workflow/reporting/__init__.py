"""Reporting: a day's figures, the HTML and text report, mail, and the daily schedule."""
