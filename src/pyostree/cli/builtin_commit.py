"""``ostree commit``: commit a new revision."""

from __future__ import annotations

import sys

from pyostree.cli.main import Context
from pyostree.cli.options import FLAG, INT, STRING, STRINGS, Opt, parse
from pyostree.errors import OstreeError
from pyostree.store import gvariant, refs
from pyostree.store import objects as obj
from pyostree.store.timeutil import parse_timestamp
from pyostree.tree.commit import (
    CommitModifier,
    DirectoryCommitter,
    Metadata,
    MutableTree,
    mtree_from_commit,
    write_commit,
)

OPTIONS = [
    Opt("subject", "s", STRING, "One line subject"),
    Opt("body", "m", STRING, "Full description"),
    Opt("body-file", "F", STRING, "Commit message from FILE path"),
    Opt("editor", "e", FLAG, "Use an editor to write the commit message"),
    Opt("branch", "b", STRING, "Branch"),
    Opt("orphan", None, FLAG, "Create a commit without writing a ref"),
    Opt("no-bindings", None, FLAG, "Do not write any ref bindings"),
    Opt("bind-ref", None, STRINGS, "Add a ref to ref binding commit metadata"),
    Opt("base", None, STRING, "Start from the given commit as a base"),
    Opt("tree", None, STRINGS, "Overlay the given argument as a tree", "dir=PATH or tar=TARFILE or ref=COMMIT"),
    Opt("add-metadata-string", None, STRINGS, "Add a key/value pair to metadata", "KEY=VALUE"),
    Opt("add-metadata", None, STRINGS, "Add a key/value pair to metadata (GVariant text)", "KEY=VALUE"),
    Opt("keep-metadata", None, STRINGS, "Keep metadata KEY and its associated VALUE from parent", "KEY"),
    Opt("add-detached-metadata-string", None, STRINGS, "Add a key/value pair to detached metadata", "KEY=VALUE"),
    Opt("owner-uid", None, INT, "Set file ownership user id"),
    Opt("owner-gid", None, INT, "Set file ownership group id"),
    Opt("canonical-permissions", None, FLAG, "Canonicalize permissions in the same way bare-user does"),
    Opt("mode-ro-executables", None, FLAG, "Ensure executable files are not writable"),
    Opt("no-xattrs", None, FLAG, "Do not import extended attributes"),
    Opt("selinux-policy", None, STRING, "Set SELinux labels based on policy in root filesystem PATH"),
    Opt("selinux-policy-from-base", "P", FLAG, "Set SELinux labels based on first --tree argument"),
    Opt("link-checkout-speedup", None, FLAG, "Optimize for commits of trees composed of hardlinks into the repository"),
    Opt("devino-canonical", "I", FLAG, "Assume hardlinked objects are unmodified"),
    Opt("tar-autocreate-parents", None, FLAG, "When loading tar archives, automatically create parent directories as needed"),
    Opt("tar-pathname-filter", None, STRING, "When loading tar archives, use REGEX,REPLACEMENT against path names"),
    Opt("skip-if-unchanged", None, FLAG, "If the contents are unchanged from previous commit, do nothing"),
    Opt("statoverride", None, STRING, "File containing list of modifications to make to permissions"),
    Opt("skip-list", None, STRING, "File containing list of files to skip"),
    Opt("consume", None, FLAG, "Consume (delete) content after commit (for local directories)"),
    Opt("table-output", None, FLAG, "Output more information in a KEY: VALUE format"),
    Opt("gpg-sign", None, STRINGS, "GPG Key ID to sign the commit with"),
    Opt("gpg-homedir", None, STRING, "GPG Homedir"),
    Opt("sign", None, STRINGS, "Sign the commit with", "KEY_ID"),
    Opt("sign-type", None, STRING, "Signature type to use (defaults to 'ed25519')"),
    Opt("generate-sizes", None, FLAG, "Generate size information along with commit metadata"),
    Opt("disable-fsync", None, FLAG, "Do not invoke fsync()"),
    Opt("fsync", None, STRING, "Specify how to invoke fsync()", "POLICY"),
    Opt("timestamp", None, STRING, "Override the timestamp of the commit"),
    Opt("parent", None, STRING, "Parent commit checksum, or \"none\""),
    Opt("bootable", None, FLAG, "Flag this commit as a bootable OSTree"),
    Opt("generate-composefs-metadata", None, FLAG, "Generate composefs commit metadata", hidden=True),
    Opt("process-passthrough-whiteouts", None, FLAG,
        "With --generate-composefs-metadata: digest of the image with .ostree-wh.NAME as whiteouts (pyostree)", hidden=True),
    Opt("retarget-whiteouts", None, FLAG, "Store overlayfs whiteouts (char 0:0) as .ostree-wh.NAME files"),
    Opt("quote-special-files", None, FLAG, "Store device nodes and FIFOs as quoted regular files"),
]


def _parse_kv(s: str, allow_empty_key: bool = False) -> tuple[str, str]:
    if "=" not in s:
        raise OstreeError(f"Missing '=' in KEY=VALUE metadata '{s}'")
    k, _, v = s.partition("=")
    if not k and not allow_empty_key:  # ostree checks commit metadata keys, not detached ones
        raise OstreeError("Empty metadata key")
    return k, v


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()]
    except OSError as e:
        raise OstreeError(f"Opening {path}: {e.strerror}") from None


def parse_fsync(value: str) -> bool:
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise OstreeError(f"Invalid fsync policy '{value}'")


def run(ctx: Context, argv: list[str]) -> int:
    o, args = parse(argv, OPTIONS, "commit [OPTION…] [PATH]", "Commit a new revision")
    repo = ctx.open_repo()
    if o.disable_fsync:
        repo.disable_fsync = True
    if o.fsync is not None:
        repo.disable_fsync = not parse_fsync(o.fsync)

    if o.process_passthrough_whiteouts and not o.generate_composefs_metadata:
        raise OstreeError("--process-passthrough-whiteouts requires --generate-composefs-metadata")

    statoverride_adds: dict[str, int] = {}
    statoverride_sets: dict[str, int] = {}
    if o.statoverride is not None:  # --statoverride= names no file: an error, as ostree
        for line in _read_lines(o.statoverride):
            spc = line.find(" ")
            if spc < 0:
                raise OstreeError("Malformed statoverride file (no space found)")
            fn = line[spc + 1:]
            try:
                if line.startswith("="):
                    statoverride_sets[fn] = int(float(line[1:spc])) & 0xFFFFFFFF
                else:
                    statoverride_adds[fn] = int(float(line[:spc])) & 0xFFFFFFFF
            except (ValueError, OverflowError):  # "inf" and "nan" parse as floats
                raise OstreeError(f"Malformed statoverride line '{line}'") from None
    skip_list = set(_read_lines(o.skip_list)) if o.skip_list is not None else set()

    if o.canonical_permissions and o.owner_uid is not None and o.owner_uid > 0:
        raise OstreeError("Cannot specify both --canonical-permissions and non-zero --owner-uid")
    if o.canonical_permissions and o.owner_gid is not None and o.owner_gid > 0:
        raise OstreeError("Cannot specify both --canonical-permissions and non-zero --owner-gid")

    if not (o.branch or o.orphan):
        raise OstreeError("A branch must be specified with --branch, or use --orphan")
    if o.branch:
        refs.parse_refspec(o.branch)

    parent: str | None = None
    if o.parent is not None:
        if o.parent != "none":
            if not obj.is_valid_checksum(o.parent):
                raise OstreeError(f"Invalid rev {o.parent}")
            parent = o.parent
    elif not o.orphan:
        parent = refs.resolve_rev(repo, o.branch, allow_noent=True)

    metadata: Metadata | None = None
    if o.add_metadata_string or o.add_metadata or o.keep_metadata or o.bootable:
        metadata = []
        for s in o.add_metadata_string:
            k, v = _parse_kv(s)
            metadata.append((k, gvariant.Variant("s", v)))
        for s in o.add_metadata:
            k, v = _parse_kv(s)
            try:
                metadata.append((k, gvariant.parse_text(v)))
            except gvariant.GVariantError as e:
                raise OstreeError(f"Parsing {s}: {e}") from None
        if o.keep_metadata:
            if not parent:
                raise OstreeError("Either --branch or --parent must be specified when using --keep-metadata")
            pc = repo.load_commit(parent)
            for key in o.keep_metadata:
                kept = pc.get_metadata(key)
                if kept is None:
                    raise OstreeError(f"Missing metadata key '{key}' from commit '{parent}'")
                metadata.append((key, kept))
    detached: Metadata | None = None
    if o.add_detached_metadata_string:
        detached = []
        for s in o.add_detached_metadata_string:
            k, v = _parse_kv(s, allow_empty_key=True)
            detached.append((k, gvariant.Variant("s", v)))

    body = ""
    if o.body_file:
        try:
            with open(o.body_file, encoding="utf-8") as f:
                body = f.read()
        except OSError as e:
            raise OstreeError(f"Opening {o.body_file}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise OstreeError(f"{o.body_file}: invalid UTF-8") from None
    elif o.body:
        body = o.body
    if o.editor:
        raise OstreeError("--editor is not supported; use -s/-m or -F")
    subject = o.subject or ""

    timestamp = parse_timestamp(o.timestamp) if o.timestamp else None

    # as ostree: a negative --owner-uid/--owner-gid (its unset value is -1) leaves ownership alone
    owner_uid = o.owner_uid if o.owner_uid is not None and o.owner_uid >= 0 else None
    owner_gid = o.owner_gid if o.owner_gid is not None and o.owner_gid >= 0 else None
    modifier = CommitModifier(
        owner_uid=owner_uid, owner_gid=owner_gid, skip_xattrs=o.no_xattrs,
        canonical_permissions=o.canonical_permissions, mode_ro_executables=o.mode_ro_executables,
        mode_adds=statoverride_adds, mode_overrides=statoverride_sets, skip_list=skip_list,
        devino_canonical=o.devino_canonical,
        link_checkout_speedup=o.link_checkout_speedup or o.devino_canonical,
        consume=o.consume, generate_sizes=o.generate_sizes,
    )
    if o.retarget_whiteouts or o.quote_special_files:
        from pyostree.tree.quoting import install_commit_quoting

        install_commit_quoting(modifier, whiteouts=o.retarget_whiteouts, special=o.quote_special_files)

    trees = list(o.tree)
    if not trees:
        trees = ["dir=" + (args[0] if args else ".")]

    with repo.transaction():
        mtree = mtree_from_commit(repo, o.base) if o.base else MutableTree()
        committer: DirectoryCommitter | None = None
        recorder = None
        if o.generate_sizes and repo.is_archive:
            from pyostree.tree.sizes import SizeRecorder

            recorder = SizeRecorder(repo)
            modifier.object_seen = recorder.note
        for i, spec in enumerate(trees):
            if "=" not in spec:
                raise OstreeError(f"Missing type in tree specification '{spec}'")
            kind, _, value = spec.partition("=")
            if recorder is not None:
                recorder.clear()  # ostree restarts its size table with every tree walk
            if kind == "dir":
                committer = committer or DirectoryCommitter(repo, modifier)
                committer.stream_dirtrees = i == len(trees) - 1
                committer.commit_dir(value, mtree)
            elif kind == "tar":
                from pyostree.tree.tarimport import import_tar_to_mtree

                import_tar_to_mtree(repo, value, mtree, modifier, autocreate_parents=o.tar_autocreate_parents,
                                    pathname_filter=o.tar_pathname_filter)
            elif kind == "ref":
                from pyostree.tree.commit import write_ref_tree_to_mtree

                write_ref_tree_to_mtree(repo, value, mtree, modifier)
            else:
                raise OstreeError(f"Invalid tree type specification '{kind}'")
        unmatched = [p for p in statoverride_adds if p not in modifier.matched_statoverrides]
        if unmatched:
            for p in unmatched:
                sys.stderr.write(f"Unmatched statoverride path: {p}\n")
            raise OstreeError("Unmatched statoverride paths")
        unmatched = [p for p in skip_list if p not in modifier.matched_skips]
        if unmatched:
            for p in unmatched:
                sys.stderr.write(f"Unmatched skip-list path: {p}\n")
            raise OstreeError("Unmatched skip-list paths")
        root_contents = mtree.write(repo)
        if mtree.metadata_checksum is None:
            raise OstreeError("Can't commit an empty tree")
        root_meta = mtree.metadata_checksum

        if o.skip_if_unchanged and parent:
            pc = repo.load_commit(parent)
            if (pc.root_contents, pc.root_meta) == (root_contents, root_meta):
                repo.txn_refs.clear()
                print(parent)
                return 0

        if not o.no_bindings:
            metadata = list(metadata or [])
            bind = sorted(([o.branch] if o.branch else []) + list(o.bind_ref), key=lambda s: s.encode())
            metadata.append(("ostree.ref-binding", gvariant.Variant("as", bind)))
            cid = repo.collection_id
            if cid and not any(k == "ostree.collection-binding" for k, _ in metadata):
                metadata.append(("ostree.collection-binding", gvariant.Variant("s", cid)))
        if o.bootable:
            from pyostree.tree.bootable import bootable_metadata

            metadata = bootable_metadata(repo, root_contents, root_meta, list(metadata or []))
        if o.generate_composefs_metadata:
            from pyostree.composefs.image import composefs_metadata

            metadata = composefs_metadata(repo, root_contents, root_meta, list(metadata or []),
                                          passthrough_whiteouts=bool(o.process_passthrough_whiteouts))
        if o.generate_sizes:
            from pyostree.tree.sizes import sizes_metadata

            metadata = list(metadata or []) + sizes_metadata(repo, mtree, recorder)

        csum = write_commit(repo, parent=parent, subject=subject, body=body, metadata=metadata or [],
                            root_contents=root_contents, root_meta=root_meta, timestamp=timestamp)
        if detached is not None:
            repo.write_detached_metadata(csum, detached)
        if o.gpg_sign:
            from pyostree.remote import gpg

            for key in o.gpg_sign:
                gpg.sign_commit(repo, csum, key, o.gpg_homedir)
        if o.sign:
            import importlib

            try:
                sign_mod = importlib.import_module("pyostree.remote.sign")
            except ModuleNotFoundError:
                raise OstreeError("Signing commits is not supported by this pyostree") from None
            sign_mod.sign_commit(repo, csum, o.sign, o.sign_type or "ed25519")
        if o.branch:
            refs.set_ref(repo, None, o.branch, csum)
    if o.consume and committer is None:
        pass
    if o.table_output:
        st = repo.stats
        print(f"Commit: {csum}")
        print(f"Metadata Total: {st['metadata_total']}")
        print(f"Metadata Written: {st['metadata_written']}")
        print(f"Content Total: {st['content_total']}")
        print(f"Content Written: {st['content_written']}")
        print(f"Content Cache Hits: {st['content_cache_hits']}")
        print(f"Content Bytes Written: {st['content_bytes_written']}")
    else:
        print(csum)
    return 0
