"""Energy intelligence on top of the accounting: weather and degree-days, expected-consumption models with ASHRAE
Guideline 14 errors, and the day-ahead charging plan of the storage tank under the time-of-use tariff.

Models are pure functions of their inputs (numbers in, numbers out); ``energy.api`` serves them as JSON routes.
"""
