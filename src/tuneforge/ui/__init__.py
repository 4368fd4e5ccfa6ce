"""``tuneforge ui``: the web app. One module per tab (data, recipe, train, eval, chat, export), the
schema-generated form (form.py), the metrics reader (metrics.py), the process manager (process.py)
and the app that puts them together (app.py). The callbacks only call library functions the CLI
calls and format their results; see docs/UI.md."""
