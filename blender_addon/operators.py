"""Operators: generate (modal when invoked from the UI, synchronous from scripts), cancel, and
install the backend."""

from __future__ import annotations

import bpy

from . import preferences, runtime
from .installer import Installer, find_base_python, install_steps
from .pointcloud import PointCloudError, object_point_cloud
from .runtime import LaunchConfig
from .session import GenerationSession, Settings, State, create_output_object

TIMER_INTERVAL_S = 0.05   # 20 viewport updates a second at most
TICK_BUDGET_S = 0.004     # time a modal tick may spend draining events
SYNC_WAIT_S = 0.1         # how long the synchronous loop sleeps waiting for the backend


class UserError(ValueError):
    """A problem the user can fix; the message says how."""


def launch_config(context: bpy.types.Context) -> LaunchConfig:
    prefs = preferences.get(context)
    python = prefs.resolved_python()
    if not python.is_file():
        raise UserError(f"The backend is not installed ({python} does not exist). Open Preferences > "
                        "Add-ons > SpecMesh and press Install Backend, or set Backend Python")
    return LaunchConfig(str(python), prefs.resolved_model(), prefs.device,
                        str(preferences.user_dir() / "backend.log"))


def target_objects(context: bpy.types.Context, batch: bool) -> list[bpy.types.Object]:
    """Selected mesh objects, active first; only the first one unless `batch`."""
    selected = list(context.selected_objects)
    if not selected:
        raise UserError("Nothing is selected: select a mesh object first")
    active = context.active_object
    if active in selected:
        selected.remove(active)
        selected.insert(0, active)
    meshes = [obj for obj in selected if obj.type == "MESH"]
    if not meshes:
        first = selected[0]
        raise UserError(f"'{first.name}' is a {first.type.lower().replace('_', ' ')}, not a mesh; "
                        "select a mesh object")
    return meshes if batch else meshes[:1]


def start_generation(context: bpy.types.Context, source: bpy.types.Object) -> GenerationSession:
    """Sample `source`, create `<name>_retopo` and send the request. Raises UserError/PointCloudError."""
    props = context.scene.specmesh
    settings = Settings(delta=props.delta, heads=props.heads, faces=props.faces, max_faces=props.max_faces,
                        seed=props.seed,
                        lossless=props.lossless, quads=props.quads, attempts=props.attempts,
                        symmetry=props.symmetry)
    sample = object_point_cloud(source, context.evaluated_depsgraph_get(), seed=settings.seed)
    client = runtime.get_client(launch_config(context))
    output = create_output_object(source)
    session = GenerationSession(client, output.name, settings)
    runtime.session = session
    session.start(sample)
    return session


def finish_generation(session: GenerationSession) -> None:
    """Record the outcome; an output object that never got a face is removed again."""
    output = bpy.data.objects.get(session.output_name)
    if output is not None and output.type == "MESH" and len(output.data.polygons) == 0:
        mesh = output.data
        bpy.data.objects.remove(output)
        bpy.data.meshes.remove(mesh)
    runtime.set_status(session.message, is_error=session.state is State.FAILED)


def _redraw_views(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class SPECMESH_OT_generate(bpy.types.Operator):
    """Turn the selected mesh into a clean low-poly mesh; faces stream into a new object"""
    bl_idname = "specmesh.generate"
    bl_label = "Generate Artist Mesh"
    bl_options = {"REGISTER", "UNDO"}

    _timer = None
    _session: GenerationSession | None = None

    # Scripts and `blender -b`: every selected mesh, one after another, to the end.
    # FINISHED only when every generation completed; a cancelled or failed one gives CANCELLED
    # (its partial mesh stays in the scene).
    def execute(self, context: bpy.types.Context) -> set[str]:
        if runtime.running_session() is not None:
            self.report({"ERROR"}, "A generation is already running; cancel it first")
            return {"CANCELLED"}
        try:
            sources = target_objects(context, batch=True)
        except UserError as exc:
            return self._refuse(str(exc))
        completed = True
        for source in sources:
            try:
                session = start_generation(context, source)
            except (UserError, PointCloudError) as exc:
                self._refuse(str(exc))
                completed = False
                continue
            run_to_end(session)
            finish_generation(session)
            level = {State.DONE: "INFO", State.CANCELLED: "WARNING"}.get(session.state, "ERROR")
            self.report({level}, f"{source.name}: {session.message}")
            completed &= session.state is State.DONE
        return {"FINISHED"} if completed else {"CANCELLED"}

    # The UI: the active mesh, modal, with a timer so that the viewport stays responsive.
    # Kept geometry (finished or cancelled part-way) is FINISHED, so that one undo removes it.
    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if context.window is None:  # `blender -b` or bpy as a module: no event loop to be modal in
            return self.execute(context)
        if runtime.running_session() is not None:
            self.report({"ERROR"}, "A generation is already running; cancel it first")
            return {"CANCELLED"}
        try:
            self._session = start_generation(context, target_objects(context, batch=False)[0])
        except (UserError, PointCloudError) as exc:
            return self._refuse(str(exc))
        runtime.set_status(self._session.message)
        self._timer = context.window_manager.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        session = self._session
        if event.type == "ESC" and event.value == "PRESS":
            session.cancel()
            return {"RUNNING_MODAL"}  # consumed: Esc is ours while generating
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        finished = session.tick(TICK_BUDGET_S)
        _redraw_views(context)
        if not finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        kept = session.progress.faces > 0
        finish_generation(session)
        self.report({"ERROR"} if session.state is State.FAILED else {"INFO"}, session.message)
        return {"FINISHED"} if kept else {"CANCELLED"}

    def _refuse(self, message: str) -> set[str]:
        runtime.set_status(message, is_error=True)
        self.report({"ERROR"}, message)
        return {"CANCELLED"}


def run_to_end(session: GenerationSession) -> None:
    """Tick until the session ends; Ctrl+C in a terminal cancels it (keeping what was made)."""
    try:
        while not session.tick(budget_s=SYNC_WAIT_S):
            session.client.wait(SYNC_WAIT_S)
    except KeyboardInterrupt:
        session.cancel()
        while not session.tick(budget_s=SYNC_WAIT_S):
            session.client.wait(SYNC_WAIT_S)


class SPECMESH_OT_cancel(bpy.types.Operator):
    """Stop the running generation; the faces made so far are kept"""
    bl_idname = "specmesh.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runtime.running_session() is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.session.cancel()
        return {"FINISHED"}


class SPECMESH_OT_install_backend(bpy.types.Operator):
    """Create a Python environment in the add-on's user folder and install PyTorch and the bundled backend into it"""
    bl_idname = "specmesh.install_backend"
    bl_label = "Install Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        if runtime.installer is not None and runtime.installer.running:
            self.report({"ERROR"}, "The backend is already being installed")
            return {"CANCELLED"}
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Installing downloads PyTorch with pip: allow Online Access in "
                                   "Preferences > System > Network, or set Backend Python to an existing environment")
            return {"CANCELLED"}
        prefs = preferences.get(context)
        try:
            base_python = find_base_python(bpy.path.abspath(prefs.base_python) if prefs.base_python else "")
        except FileNotFoundError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        folder = preferences.user_dir()
        steps = install_steps(base_python, folder / "venv", preferences.backend_source(), prefs.device)
        runtime.installer = Installer(steps, folder / "install.log")
        runtime.installer.start()
        bpy.app.timers.register(_redraw_preferences, first_interval=0.25)
        return {"FINISHED"}


def _redraw_preferences() -> float | None:
    """Timer: keep the preferences window's log and progress bar live while installing."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()
    installer = runtime.installer
    return 0.25 if installer is not None and installer.running else None
