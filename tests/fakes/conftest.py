from tests.fakes.fixtures import fake_upstream, make_fake_upstream

__all__ = ["fake_upstream", "make_fake_upstream"]
