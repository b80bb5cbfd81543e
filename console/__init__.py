"""The operator console at `/ui/`: server-rendered pages over the store, with live
updates from the event stream (console/static/console.js), sessions and CSRF tokens
(receiver/auth.py `Sessions`)."""
