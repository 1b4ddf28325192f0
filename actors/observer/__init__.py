"""The observer: a live supervision tree, jobs, nodes, projections and limiters in a browser, and /metrics.

```python
from actors.observer import serve

observer = serve(rt, db_config)          # http://127.0.0.1:<free port>/, updated live
observer.stop()
```

From a shell, next to a runtime started with `Runtime(name="demo")`:
`thespian-otp observer --name demo --schema thespian_otp_demo`. Needs the `observer` extra
(`pip install 'thespian-otp[observer]'`: starlette, uvicorn, prometheus-client).
"""

from actors.observer.history import History
from actors.observer.server import Observer, serve

__all__ = ["History", "Observer", "serve"]
