"""django.contrib.admin with Kanri's site (store.admin_site) as `admin.site`: staff need a second
factor. Its own module because an app config must load before any model does."""
from django.contrib.admin.apps import AdminConfig


class StaffAdminConfig(AdminConfig):
    default_site = "store.admin_site.StaffAdminSite"
