#pragma once
// `shoal image load FILE` (docs/containers.md "Images"): an image tarball read into the node's
// image store, for clusters without a registry. Two kinds are read:
//   - an OCI image layout (oci-layout, index.json, blobs/sha256/<hex>), as skopeo's
//     oci-archive, tools/images/make-busybox-image --tar and docker ≥ 25's `docker save` write;
//     the names come from each index entry's io.containerd.image.name annotation, else its
//     org.opencontainers.image.ref.name when that is a reference (a bare word like "latest"
//     is only a tag, as the OCI layout spec uses it: such an image is loaded without a name and
//     listed by id); an entry that is an index picks this node's platform;
//   - a docker-archive (`docker save` before 25: manifest.json with Config, RepoTags and
//     Layers, the layers plain tars): an OCI manifest is made for each image (config and
//     layers by their digests and sizes) and committed under each of its RepoTags.
//
// All or nothing: every entry is first extracted to the store's tmp/ with its sha256, then
// every blob an image needs is checked (an OCI blob against its file name and its
// descriptor's size, a docker layer against the config's rootfs.diff_ids) before the first
// one is put into the store. A truncated, tampered or incomplete archive is an error that names
// the archive and the entry, and changes nothing in the store.
//
// The pure part (planLoad) decides from the entries' digests and the small JSON documents;
// loadImageArchive does the I/O around it.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "services/agentd/image_manifest.h"
#include "services/agentd/image_store.h"

namespace shoal::agentd {

// One entry of the archive as extraction saw it (the path without a leading "./").
struct ArchiveEntry {
  std::string digest;  // sha256:<hex> of its content; "" for a link
  int64_t size = 0;
  std::string head;    // its first bytes (up to 8), to tell gzip or zstd from a plain tar
  std::string linkTo;  // a symlink's or hard link's target, as an archive path; "" otherwise
};
using ArchiveEntries = std::map<std::string, ArchiveEntry, std::less<>>;
// Reads a (small) entry's content: index.json, manifests, configs. Links are resolved first.
using ReadEntry = std::function<Result<std::string>(const std::string& path)>;

struct PlannedImage {
  std::string ref;             // normalised (docker.io/library/busybox:latest); "" unnamed
  std::string manifestDigest;
};

// What a load puts into the store, in order: blobs from the archive, manifests made here,
// then the images.
struct LoadPlan {
  std::vector<std::string> entries;                // archive paths, each once (links resolved)
  std::map<std::string, std::string> synthesized;  // digest → manifest JSON made here
  std::vector<PlannedImage> images;
};

// The plan for an archive whose entries are `entries`. `archive` names it in errors. Errors
// say which entry is wrong and how ("blobs/sha256/ab12…: its content's digest is sha256:…, so
// the archive was changed after it was written").
Result<LoadPlan> planLoad(std::string_view archive, const ArchiveEntries& entries,
                          const ReadEntry& read, const image::Platform& platform);

// The pieces, for tests.
// The name an OCI index entry gives its image from its annotations ("" none), normalised.
Result<std::string> ociImageName(const std::map<std::string, std::string>& annotations);
// The media type of a layer from its first bytes: tar+gzip, tar+zstd or plain tar.
std::string layerMediaType(std::string_view head);
// An OCI image manifest for a config and layers (docker-archive): the JSON and its digest.
struct MadeManifest {
  std::string json, digest;
};
MadeManifest makeManifest(const image::Descriptor& config,
                          const std::vector<image::Descriptor>& layers);
// sha256:<hex> of bytes.
std::string sha256Digest(std::string_view bytes);

// Reads the tarball at tarPath (plain, gzip or any compression libarchive knows) into the
// store and returns the images loaded. Blocking: run it on a worker thread.
Result<std::vector<Image>> loadImageArchive(ImageStore& store, const std::string& tarPath);

}  // namespace shoal::agentd
