"""The floor under the rooms: what listeners, dispatch and the receiver all use.

`health` (the board `/readyz` reads), `http` (client sessions and small answers),
`supervise` (a loop restarted after a crash), `files` (a streamed result written to disk
safely). Nothing here imports a room above it.
"""
