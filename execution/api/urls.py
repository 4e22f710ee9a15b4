from rest_framework.routers import DefaultRouter

from execution.api.views import AccountViewSet, DecisionViewSet, PendingOrderViewSet, PositionViewSet, TradeViewSet

router = DefaultRouter()
router.register("accounts", AccountViewSet, basename="account")
router.register("positions", PositionViewSet, basename="position")
router.register("trades", TradeViewSet, basename="trade")
router.register("pending-orders", PendingOrderViewSet, basename="pendingorder")
router.register("decisions", DecisionViewSet, basename="decision")

urlpatterns = router.urls
