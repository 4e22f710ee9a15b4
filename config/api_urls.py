"""The REST API's routes, composed here (the one place that knows every app's views), so that
`execution` need not import `decisions` (apps depend one way)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from decisions.api.views import DecisionViewSet
from execution.api.history import AlertViewSet, EventViewSet, FundingPaymentViewSet, ReconciliationRunViewSet
from execution.api.parity import AccountParityView
from execution.api.views import AccountViewSet, PendingOrderViewSet, PositionViewSet, TradeViewSet

router = DefaultRouter()
router.register("accounts", AccountViewSet, basename="account")
router.register("positions", PositionViewSet, basename="position")
router.register("trades", TradeViewSet, basename="trade")
router.register("pending-orders", PendingOrderViewSet, basename="pendingorder")
router.register("decisions", DecisionViewSet, basename="decision")
router.register("events", EventViewSet, basename="event")
router.register("alerts", AlertViewSet, basename="alert")
router.register("funding-payments", FundingPaymentViewSet, basename="fundingpayment")
router.register("reconciliation-runs", ReconciliationRunViewSet, basename="reconciliationrun")

urlpatterns = [*router.urls, path("accounts/<int:pk>/parity/", AccountParityView.as_view(), name="account-parity")]
