import pytest

from execution.services import LiveExecutionAdapter, PaperExecutionAdapter, get_execution_adapter
from tests.factories import LiveV1AccountFactory, LiveV3AccountFactory, PaperAccountFactory

pytestmark = pytest.mark.django_db


def test_paper_account_gets_the_paper_adapter():
    adapter = get_execution_adapter(PaperAccountFactory())
    assert isinstance(adapter, PaperExecutionAdapter)
    assert adapter.mode == "paper"


@pytest.mark.parametrize("factory", [LiveV1AccountFactory, LiveV3AccountFactory])
def test_live_account_gets_the_live_adapter(factory):
    adapter = get_execution_adapter(factory())
    assert isinstance(adapter, LiveExecutionAdapter)
    assert adapter.mode == "live"
