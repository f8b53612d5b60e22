"""``frugalign models``: list the embedded defaults and prepare them for offline use."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list or prepare the embedded default models",
                       description="List embedded default models, or materialise them into the cache.")
    p.add_argument("action", choices=["list", "prepare"], nargs="?", default="list")
    p.add_argument("names", nargs="*", help="embedded model names (default: all installed)")
    p.set_defaults(func=run)


def run(args) -> int:
    import importlib.util

    from ..data import cache_dir
    from ..models import EMBEDDED, materialized_dir

    if args.action == "list":
        for em in EMBEDDED.values():
            installed = importlib.util.find_spec(em.module) is not None
            state = "installed" if installed else f"missing: {em.install}"
            print(f"{em.name:24s} {em.description}  [{state}]")
        print(f"cache: {cache_dir()}")
        return 0
    names = args.names or [n for n, em in EMBEDDED.items() if importlib.util.find_spec(em.module)]
    for name in names:
        print(f"{name}: {materialized_dir(name)}")
    return 0
