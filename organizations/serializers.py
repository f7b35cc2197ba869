"""Input and output shapes of the administration API (OpenAI's admin objects, `object` fields,
Unix-second timestamps). Output serializers render the rows the selectors return."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from gateway.api import StrictIn
from organizations.models import ApiKey, OrganizationMember, ProjectMember

# --- Fields ------------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class ConstField(serializers.Field):  # type: ignore[type-arg]
    """A fixed string, such as an object's `object` marker."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(read_only=True, source="*")

    def to_representation(self, value: Any) -> str:
        return self.value


@extend_schema_field(OpenApiTypes.INT)
class UnixTimeField(serializers.Field):  # type: ignore[type-arg]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: datetime) -> int:
        return int(value.timestamp())


def RoleField(choices: list[str], **kwargs: Any) -> serializers.CharField:
    """A role as a plain string: organization and project roles share the name `role` but not
    their values, which drf-spectacular's enum components cannot name apart."""

    def check(value: str) -> None:
        if value not in choices:
            raise serializers.ValidationError(
                f'"{value}" is not a valid role; use one of: {", ".join(choices)}.'
            )

    # Documented as an enum all the same (settings.SPECTACULAR_SETTINGS' ENUM_NAME_OVERRIDES names
    # the two sets apart), on a class of its own: DRF copies declared fields by re-instantiating
    # them, which would drop an annotation on the instance.
    documented = extend_schema_field({"type": "string", "enum": choices})(
        type("RoleField", (serializers.CharField,), {})
    )
    field: serializers.CharField = documented(validators=[check], **kwargs)
    return field


ORG_ROLES = list(OrganizationMember.Role.values)
PROJECT_ROLES = list(ProjectMember.Role.values)


# --- Inputs ------------------------------------------------------------------------------------


class OrganizationCreateIn(StrictIn):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class OrganizationUpdateIn(StrictIn):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class _KeyCreateIn(StrictIn):
    schema_rules: ClassVar[dict[str, Any]] = {"not": {"required": ["expires_in", "expires_at"]}}

    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    expires_in = serializers.IntegerField(required=False, min_value=1, max_value=10 * 365 * 86400)
    expires_at = serializers.IntegerField(required=False, min_value=1)


class OrganizationKeyCreateIn(_KeyCreateIn):
    type = serializers.ChoiceField(choices=["organization"], required=False, default="organization")


class AdminKeyCreateIn(_KeyCreateIn):
    type = serializers.ChoiceField(choices=["admin"], required=False, default="admin")


class ProjectKeyCreateIn(_KeyCreateIn):
    type = serializers.ChoiceField(
        choices=["project", "service", "ephemeral"], required=False, default="project"
    )
    service_account_id = serializers.CharField(max_length=40, required=False)

    schema_rules: ClassVar[dict[str, Any]] = {
        **_KeyCreateIn.schema_rules,
        "oneOf": [
            {
                "properties": {"type": {"type": "string", "const": "service"}},
                "required": ["type", "service_account_id"],
            },
            {
                "properties": {"type": {"type": "string", "enum": ["project", "ephemeral"]}},
                "not": {"required": ["service_account_id"]},
            },
        ],
    }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == "service" and not attrs.get("service_account_id"):
            raise serializers.ValidationError(
                {"service_account_id": "A service key needs service_account_id."}
            )
        if attrs["type"] != "service" and attrs.get("service_account_id"):
            raise serializers.ValidationError(
                {"service_account_id": "Only service keys have a service account."}
            )
        return attrs


class ProjectCreateIn(StrictIn):
    name = serializers.CharField(max_length=200)


class ProjectUpdateIn(StrictIn):
    name = serializers.CharField(max_length=200)


class _MemberAddIn(StrictIn):
    email = serializers.EmailField(required=False)
    user_id = serializers.CharField(max_length=40, required=False)

    schema_rules: ClassVar[dict[str, Any]] = {"oneOf": [{"required": ["email"]}, {"required": ["user_id"]}]}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("email")) == bool(attrs.get("user_id")):
            raise serializers.ValidationError({"user_id": "Give either email or user_id."})
        return attrs


class OrganizationUserAddIn(_MemberAddIn):
    role = RoleField(ORG_ROLES, default=OrganizationMember.Role.READER)


class OrganizationUserUpdateIn(StrictIn):
    role = RoleField(ORG_ROLES)


class ProjectUserAddIn(_MemberAddIn):
    role = RoleField(PROJECT_ROLES, default=ProjectMember.Role.MEMBER)


class ProjectUserUpdateIn(StrictIn):
    role = RoleField(PROJECT_ROLES)


class ServiceAccountCreateIn(StrictIn):
    name = serializers.CharField(max_length=200)


class InviteProjectIn(StrictIn):
    id = serializers.CharField(max_length=40)
    role = RoleField(PROJECT_ROLES, default=ProjectMember.Role.MEMBER)


class InviteCreateIn(StrictIn):
    email = serializers.EmailField(max_length=254)
    role = RoleField(ORG_ROLES, default=OrganizationMember.Role.READER)
    projects = InviteProjectIn(many=True, required=False, default=list)


class InviteVerificationIn(StrictIn):
    code = serializers.CharField(max_length=200)


# --- Outputs -----------------------------------------------------------------------------------


class OrganizationOut(serializers.Serializer[Any]):
    object = ConstField("organization")
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    description = serializers.CharField()
    is_default = serializers.BooleanField()
    created_at = UnixTimeField()


class AdminObjectDeletedOut(serializers.Serializer[Any]):
    object = serializers.CharField()
    id = serializers.CharField()
    deleted = serializers.BooleanField()


class ProjectOut(serializers.Serializer[Any]):
    object = ConstField("organization.project")
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    status = serializers.CharField()
    created_at = UnixTimeField()
    archived_at = UnixTimeField(allow_null=True)


class ApiKeyOwnerOut(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=["user", "service_account"])
    id = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField(required=False)


_KEY_OBJECT: dict[str, str] = {
    ApiKey.Type.ADMIN: "organization.admin_api_key",
    ApiKey.Type.ORGANIZATION: "organization.api_key",
}


class ApiKeyOut(serializers.Serializer[ApiKey]):
    object = serializers.SerializerMethodField()
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    description = serializers.CharField()
    type = serializers.CharField(source="key_type")
    redacted_value = serializers.CharField()
    project_id = serializers.CharField(source="project.public_id", allow_null=True, default=None)
    owner = serializers.SerializerMethodField()
    enabled = serializers.BooleanField()
    created_at = UnixTimeField()
    expires_at = UnixTimeField(allow_null=True)
    last_used_at = UnixTimeField(allow_null=True)

    def get_object(self, key: ApiKey) -> str:
        return _KEY_OBJECT.get(str(key.key_type), "organization.project.api_key")

    @extend_schema_field(ApiKeyOwnerOut(allow_null=True))
    def get_owner(self, key: ApiKey) -> dict[str, Any] | None:
        if key.service_account is not None:
            account = key.service_account
            return {"type": "service_account", "id": account.public_id, "name": account.name}
        if key.owner_user is not None:
            user = key.owner_user
            return {"type": "user", "id": user.public_id, "name": user.name, "email": user.email}
        return None


class RawKeyField(serializers.CharField):
    """The full key, which exists only in the request that created it: the view hands it over in
    the serializer's context (`raw_key`), never as an attribute of the stored row."""

    def get_attribute(self, instance: Any) -> str:
        return str(self.context["raw_key"])


class ApiKeyCreatedOut(ApiKeyOut):
    value = RawKeyField(help_text="The full key. Shown only in this response.")


class OrganizationUserOut(serializers.Serializer[Any]):
    object = ConstField("organization.user")
    id = serializers.CharField(source="user.public_id")
    email = serializers.CharField(source="user.email")
    name = serializers.CharField(source="user.name")
    role = serializers.CharField()
    added_at = UnixTimeField(source="created_at")


class ProjectUserOut(OrganizationUserOut):
    object = ConstField("organization.project.user")


class ServiceAccountOut(serializers.Serializer[Any]):
    object = ConstField("organization.project.service_account")
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    role = serializers.CharField()
    project_id = serializers.CharField(source="project.public_id")
    created_at = UnixTimeField()


class ServiceAccountKeyOut(serializers.Serializer[Any]):
    # The account's first key: not an attribute of the account, so the creating view passes it
    # (`api_key`) and its full value (`raw_key`) in the context.
    object = ConstField("organization.project.service_account.api_key")
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    value = RawKeyField()
    created_at = UnixTimeField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return dict(super().to_representation(self.context["api_key"]))


class ServiceAccountCreatedOut(ServiceAccountOut):
    api_key = ServiceAccountKeyOut(source="*")


class InviteProjectOut(serializers.Serializer[Any]):
    id = serializers.CharField()
    role = serializers.CharField()


class InviteOut(serializers.Serializer[Any]):
    object = ConstField("organization.invite")
    id = serializers.CharField(source="public_id")
    email = serializers.CharField()
    role = serializers.CharField()
    status = serializers.CharField()
    delivery_status = serializers.CharField(help_text="pending | sending | sent | failed")
    invited_at = UnixTimeField()
    expires_at = UnixTimeField()
    accepted_at = UnixTimeField(allow_null=True)
    projects = InviteProjectOut(many=True)


class AuditLogActorOut(serializers.Serializer[Any]):
    type = serializers.CharField(source="actor_type")
    id = serializers.CharField(source="actor_id")
    user_id = serializers.CharField(source="actor_user_id")


class AuditLogTargetOut(serializers.Serializer[Any]):
    type = serializers.CharField(source="target_type")
    id = serializers.CharField(source="target_id")


class AuditLogOut(serializers.Serializer[Any]):
    object = ConstField("organization.audit_log")
    id = serializers.CharField(source="public_id")
    type = serializers.CharField(source="action")
    effective_at = UnixTimeField(source="created_at")
    actor = AuditLogActorOut(source="*")
    target = AuditLogTargetOut(source="*")
    project_id = serializers.CharField()
    changes = serializers.DictField()
    request_id = serializers.CharField()


def _list_out(name: str, item: type[serializers.Serializer[Any]]) -> type[serializers.Serializer[Any]]:
    """The list envelope of gateway/pagination.py around `item`. Marked as one object: a list
    action's response is otherwise documented as an array of it."""
    fields: dict[str, Any] = {
        "object": ConstField("list"),
        "data": item(many=True),
        "first_id": serializers.CharField(allow_null=True),
        "last_id": serializers.CharField(allow_null=True),
        "has_more": serializers.BooleanField(),
    }
    return extend_schema_serializer(many=False)(type(name, (serializers.Serializer,), fields))


OrganizationListOut = _list_out("OrganizationListOut", OrganizationOut)
ProjectListOut = _list_out("ProjectListOut", ProjectOut)
ApiKeyListOut = _list_out("ApiKeyListOut", ApiKeyOut)
OrganizationUserListOut = _list_out("OrganizationUserListOut", OrganizationUserOut)
ProjectUserListOut = _list_out("ProjectUserListOut", ProjectUserOut)
ServiceAccountListOut = _list_out("ServiceAccountListOut", ServiceAccountOut)
InviteListOut = _list_out("InviteListOut", InviteOut)
AuditLogListOut = _list_out("AuditLogListOut", AuditLogOut)

# --- Rate limits (organizations.ratelimits) ------------------------------------------------------

_LIMIT_HELP = {
    "max_requests_per_1_minute": "Requests per minute; 0: no limit.",
    "max_tokens_per_1_minute": "Tokens per minute, counted from the usage of finished requests; 0: no limit.",
    "max_concurrent_streams": "Streams open at once (our extension); 0: no limit.",
}


class ProjectRateLimitOut(serializers.Serializer[Any]):
    object = ConstField("project.rate_limit")
    id = serializers.CharField(source="public_id", help_text="`rl_` and the model id.")
    model = serializers.CharField(help_text='The model these limits apply to; "*": all models together.')
    max_requests_per_1_minute = serializers.IntegerField(help_text=_LIMIT_HELP["max_requests_per_1_minute"])
    max_tokens_per_1_minute = serializers.IntegerField(help_text=_LIMIT_HELP["max_tokens_per_1_minute"])
    max_concurrent_streams = serializers.IntegerField(help_text=_LIMIT_HELP["max_concurrent_streams"])


ProjectRateLimitListOut = _list_out("ProjectRateLimitListOut", ProjectRateLimitOut)


class RateLimitUpdateIn(StrictIn):
    """Fields left out keep their value."""

    max_requests_per_1_minute = serializers.IntegerField(
        min_value=0, required=False, help_text=_LIMIT_HELP["max_requests_per_1_minute"]
    )
    max_tokens_per_1_minute = serializers.IntegerField(
        min_value=0, required=False, help_text=_LIMIT_HELP["max_tokens_per_1_minute"]
    )
    max_concurrent_streams = serializers.IntegerField(
        min_value=0, required=False, help_text=_LIMIT_HELP["max_concurrent_streams"]
    )


class ApiKeyRateLimitOut(serializers.Serializer[ApiKey]):
    object = ConstField("api_key.rate_limit")
    api_key_id = serializers.CharField(source="public_id")
    max_requests_per_1_minute = serializers.IntegerField(help_text=_LIMIT_HELP["max_requests_per_1_minute"])
    max_tokens_per_1_minute = serializers.IntegerField(help_text=_LIMIT_HELP["max_tokens_per_1_minute"])
    max_concurrent_streams = serializers.IntegerField(help_text=_LIMIT_HELP["max_concurrent_streams"])
