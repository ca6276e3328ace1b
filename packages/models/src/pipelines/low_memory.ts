/**
 * Which of a pipeline's models are on the device, and when. Resident (the default): every component stays
 * loaded for the pipeline's life. Low memory: each component lives on disk between the stages that need it — a
 * stage loads it from its source (the same loader, so the same weights: outputs are bit-exact to resident),
 * runs, then frees it and trims the buffer pool, so at most one model (the UNet with its ControlNet, when there
 * is one) is on the device at a time — and, where its weights stream (ParameterCache), only a few of them. The
 * price is reading each component's weights again for every image.
 *
 * Browser-safe: loaders read through whatever FileSource they were given.
 */
import { ParameterCache, type Device } from '@fewstep/tensor';
import type { CLIPTextModel } from '../clip/modeling_clip.js';
import type { UNet2DConditionModel } from '../unets/unet_2d_condition.js';
import type { ControlNetModel } from '../controlnets/controlnet.js';
import type { Vae } from '../autoencoders/autoencoder.js';

export interface ComponentTypes {
  text_encoder: CLIPTextModel;
  unet: UNet2DConditionModel;
  vae: Vae;
  controlnet: ControlNetModel;
}

export type ComponentName = keyof ComponentTypes;

/**
 * The cache a pipeline's weights stream through: low memory, a few at a time (the default budget); otherwise, each
 * read when a kernel first needs it and kept (no budget) — or none with `preload`: every weight read at load.
 */
export function weightStream(device: Device, opts: { lowMemory: boolean; preload: boolean }): ParameterCache | undefined {
  if (opts.lowMemory) return new ParameterCache(device);
  return opts.preload ? undefined : new ParameterCache(device, Infinity);
}

/** How low-memory mode loads each component again (each call a fresh model the caller owns). */
export interface ComponentLoaders {
  textEncoder: () => Promise<CLIPTextModel>;
  unet: () => Promise<UNet2DConditionModel>;
  vae: () => Promise<Vae>;
  controlnet?: (() => Promise<ControlNetModel>) | undefined;
}

interface Slot<M> {
  /** The loaded model, or — streamed, between stages — the last (freed) instance, whose configs stay readable. */
  model: M;
  /** Set for a streamed component. */
  load?: (() => Promise<M>) | undefined;
  loaded: boolean;
}

type Slots = { [K in ComponentName]?: Slot<ComponentTypes[K]> };

export class ComponentResidency {
  private readonly slots: Slots = {};
  /** Awaited between a forward's layers when weights stream (`stream.pace()`); undefined when nothing streams. */
  readonly pause: (() => Promise<void>) | undefined;

  /**
   * `models`: the components (streamed ones: freed instances, read for their configs). `loaders`: low-memory mode
   * — each component with a loader is loaded by `use` and freed after.
   */
  constructor(
    readonly device: Device,
    models: { text_encoder: CLIPTextModel; unet: UNet2DConditionModel; vae: Vae; controlnet?: ControlNetModel | undefined },
    loaders?: ComponentLoaders,
    /** The cache the models' weights stream through, if they do (read on first use, or, with loaders, a few at a time). */
    stream?: ParameterCache,
  ) {
    this.slots.text_encoder = { model: models.text_encoder, load: loaders?.textEncoder, loaded: !loaders };
    this.slots.unet = { model: models.unet, load: loaders?.unet, loaded: !loaders };
    this.slots.vae = { model: models.vae, load: loaders?.vae, loaded: !loaders };
    if (models.controlnet) this.slots.controlnet = { model: models.controlnet, load: loaders?.controlnet, loaded: !loaders?.controlnet };
    this.pause = stream ? () => stream.pace() : undefined;
  }

  /** True when components are loaded per stage. */
  get lowMemory(): boolean {
    return this.slots.unet!.load !== undefined;
  }

  /** The component: loaded, or (streamed, between stages) its freed last instance — configs only. */
  model<K extends ComponentName>(name: K): ComponentTypes[K] | undefined {
    return (this.slots[name] as Slot<ComponentTypes[K]> | undefined)?.model;
  }

  /** Puts a resident (already loaded) model in a slot, or empties it; the previous model is returned, not freed. */
  replace<K extends ComponentName>(name: K, model: ComponentTypes[K] | null): ComponentTypes[K] | undefined {
    const prev = this.model(name);
    if (model) (this.slots as Record<string, Slot<unknown>>)[name] = { model, loaded: true };
    else delete this.slots[name];
    return prev;
  }

  /**
   * Runs `fn` with the named components loaded. A streamed component not yet loaded is loaded first and, after
   * `fn` (even when it throws), freed, and the pool trimmed, so the next stage starts from what the device held
   * before. Resident components are just there.
   */
  async use<T>(names: readonly ComponentName[], fn: () => Promise<T>): Promise<T> {
    const mine: Slot<{ dispose(): void }>[] = [];
    let failed = false;
    try {
      for (const name of names) {
        const slot = this.slots[name] as Slot<{ dispose(): void }> | undefined;
        if (!slot || slot.loaded || !slot.load) continue;
        slot.model = await slot.load();
        slot.loaded = true;
        mine.push(slot);
      }
      return await fn();
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      if (mine.length) {
        for (const slot of mine) {
          slot.model.dispose();
          slot.loaded = false;
        }
        // What the stage pooled (its activations) goes too, and the memory goes back before the next stage loads.
        if (!failed) await this.device.trimMemory();
        else {
          this.device.flush();
          this.device.pool.trim();
        }
      }
    }
  }

  /** Frees the loaded components (a streamed one between stages is already freed). */
  dispose(): void {
    for (const slot of Object.values(this.slots) as Slot<{ dispose(): void }>[]) {
      if (slot.loaded) slot.model.dispose();
      slot.loaded = false;
    }
  }
}
