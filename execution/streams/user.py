"""The module `aster_stream` looks for (`USER_STREAMS_MODULE`): the user-data streams are in
`execution.streams.user_data`."""

from execution.streams.user_data import run_user_streams

__all__ = ["run_user_streams"]
