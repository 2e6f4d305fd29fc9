from rest_framework.routers import DefaultRouter

from . import views
from .backup_views import BackupViewSet
from .placement import PlacementViewSet

router = DefaultRouter()
router.register("customers", views.CustomerViewSet)
router.register("plans", views.PlanViewSet)
router.register("images", views.ImageViewSet)
router.register("hosts", views.HostViewSet)
router.register("servers", views.ServerViewSet)
router.register("jobs", views.JobViewSet)
router.register("ssh-keys", views.SSHKeyViewSet)
router.register("placement", PlacementViewSet, basename="placement")
router.register("backups", BackupViewSet)

urlpatterns = router.urls
