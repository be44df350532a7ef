//! An independent writer and listener on lavapipe, for the ground truth that hilt's Vulkan
//! verdicts are held to: plain `ash` calls and two small shaders of its own
//! (`tests/fixtures/vulkan/probe_*.comp`), nothing of hilt's backend or kernels.
//!
//! Shared memory: the writer's workgroups fill 32 KiB each with `pattern(seed, i)`; the
//! listener's workgroups copy out the shared memory they never wrote, and the words equal
//! to the pattern at their own index are counted. Global memory: a buffer of host-visible
//! device memory is filled through a mapping, freed, and a new allocation of the same size
//! is read through a mapping and counted.

use ash::vk;

/// Words of shared memory each probe workgroup uses (32 KiB, lavapipe's limit).
pub const SHARED_WORDS: u32 = 8192;

const WRITER: &[u8] = include_bytes!("../fixtures/vulkan/probe_writer.spv");
const LISTENER: &[u8] = include_bytes!("../fixtures/vulkan/probe_listener.spv");

/// The word the probe writes at index `i` for `seed`.
pub fn pattern(seed: u32, i: u32) -> u32 {
    seed ^ i.wrapping_mul(2_654_435_761)
}

/// A Vulkan instance and lavapipe's physical device in it.
pub struct Gpu {
    _entry: ash::Entry,
    instance: ash::Instance,
    pd: vk::PhysicalDevice,
    family: u32,
    host_type: u32,
}

impl Gpu {
    /// lavapipe, or why not.
    pub fn new() -> Result<Gpu, String> {
        // SAFETY: plain Vulkan calls with valid arguments throughout this module.
        unsafe {
            let entry = ash::Entry::load().map_err(|e| format!("no Vulkan loader: {e}"))?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
            let instance = entry
                .create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None)
                .map_err(|e| format!("no instance: {e}"))?;
            let found = instance
                .enumerate_physical_devices()
                .unwrap_or_default()
                .into_iter()
                .find(|pd| {
                    let p = instance.get_physical_device_properties(*pd);
                    p.device_name_as_c_str()
                        .is_ok_and(|n| n.to_string_lossy().starts_with("llvmpipe"))
                });
            let Some(pd) = found else {
                instance.destroy_instance(None);
                return Err("no lavapipe device".into());
            };
            let limits = instance.get_physical_device_properties(pd).limits;
            if limits.max_compute_shared_memory_size < SHARED_WORDS * 4 {
                instance.destroy_instance(None);
                return Err("lavapipe offers less than 32 KiB of shared memory".into());
            }
            let family = instance
                .get_physical_device_queue_family_properties(pd)
                .iter()
                .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
                .ok_or("no compute queue")? as u32;
            let memory = instance.get_physical_device_memory_properties(pd);
            let want = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
            let host_type = (0..memory.memory_type_count)
                .find(|&i| memory.memory_types[i as usize].property_flags.contains(want))
                .ok_or("no host-visible memory")?;
            Ok(Gpu {
                _entry: entry,
                instance,
                pd,
                family,
                host_type,
            })
        }
    }

    /// A new `VkDevice` on lavapipe with the two probe pipelines.
    pub fn device(&self) -> Dev<'_> {
        // SAFETY: see `Gpu::new`.
        unsafe {
            let priorities = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(self.family)
                .queue_priorities(&priorities)];
            let device = self
                .instance
                .create_device(
                    self.pd,
                    &vk::DeviceCreateInfo::default().queue_create_infos(&queues),
                    None,
                )
                .expect("device");
            let queue = device.get_device_queue(self.family, 0);
            let pool = device
                .create_command_pool(
                    &vk::CommandPoolCreateInfo::default()
                        .queue_family_index(self.family)
                        .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                    None,
                )
                .expect("pool");
            let cmd = device
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(pool)
                        .command_buffer_count(1),
                )
                .expect("command buffer")[0];
            let fence = device
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .expect("fence");
            let bindings = [vk::DescriptorSetLayoutBinding::default()
                .binding(0)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)];
            let set_layout = device
                .create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings), None)
                .expect("set layout");
            let set_layouts = [set_layout];
            let push = [vk::PushConstantRange::default()
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
                .size(4)];
            let layout = device
                .create_pipeline_layout(
                    &vk::PipelineLayoutCreateInfo::default()
                        .set_layouts(&set_layouts)
                        .push_constant_ranges(&push),
                    None,
                )
                .expect("pipeline layout");
            let sizes = [vk::DescriptorPoolSize::default()
                .ty(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)];
            let dpool = device
                .create_descriptor_pool(
                    &vk::DescriptorPoolCreateInfo::default().max_sets(1).pool_sizes(&sizes),
                    None,
                )
                .expect("descriptor pool");
            let set = device
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(dpool)
                        .set_layouts(&set_layouts),
                )
                .expect("set")[0];
            let pipeline = |spv: &[u8]| {
                let code = ash::util::read_spv(&mut std::io::Cursor::new(spv)).expect("SPIR-V");
                let module = device
                    .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&code), None)
                    .expect("module");
                let stage = vk::PipelineShaderStageCreateInfo::default()
                    .stage(vk::ShaderStageFlags::COMPUTE)
                    .module(module)
                    .name(c"main");
                let p = device
                    .create_compute_pipelines(
                        vk::PipelineCache::null(),
                        &[vk::ComputePipelineCreateInfo::default().stage(stage).layout(layout)],
                        None,
                    )
                    .expect("pipeline")[0];
                device.destroy_shader_module(module, None);
                p
            };
            let writer = pipeline(WRITER);
            let listener = pipeline(LISTENER);
            Dev {
                gpu: self,
                device,
                queue,
                pool,
                cmd,
                fence,
                set_layout,
                layout,
                dpool,
                set,
                writer,
                listener,
            }
        }
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // SAFETY: every device made from the instance borrowed it and is gone.
        unsafe { self.instance.destroy_instance(None) };
    }
}

/// A `VkDevice` with the probe's pipelines.
pub struct Dev<'g> {
    gpu: &'g Gpu,
    device: ash::Device,
    queue: vk::Queue,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    set_layout: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    dpool: vk::DescriptorPool,
    set: vk::DescriptorSet,
    writer: vk::Pipeline,
    listener: vk::Pipeline,
}

/// Host-visible device memory bound to a buffer, mapped.
struct Mapped {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    words: *mut u32,
    len: usize,
}

impl Dev<'_> {
    fn mapped(&self, bytes: u64) -> Mapped {
        // SAFETY: see `Gpu::new`.
        unsafe {
            let buffer = self
                .device
                .create_buffer(
                    &vk::BufferCreateInfo::default()
                        .size(bytes)
                        .usage(vk::BufferUsageFlags::STORAGE_BUFFER),
                    None,
                )
                .expect("buffer");
            let needs = self.device.get_buffer_memory_requirements(buffer);
            let memory = self
                .device
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default()
                        .allocation_size(needs.size)
                        .memory_type_index(self.gpu.host_type),
                    None,
                )
                .expect("memory");
            self.device.bind_buffer_memory(buffer, memory, 0).expect("bind");
            let words = self
                .device
                .map_memory(memory, 0, bytes, vk::MemoryMapFlags::empty())
                .expect("map")
                .cast::<u32>();
            Mapped {
                buffer,
                memory,
                words,
                len: (bytes / 4) as usize,
            }
        }
    }

    fn release(&self, m: Mapped) {
        // SAFETY: nothing uses the buffer any more.
        unsafe {
            self.device.unmap_memory(m.memory);
            self.device.destroy_buffer(m.buffer, None);
            self.device.free_memory(m.memory, None);
        }
    }

    fn run(&self, pipeline: vk::Pipeline, target: &Mapped, push: u32, groups: u32) {
        // SAFETY: see `Gpu::new`; every submission is waited for.
        unsafe {
            let info = [vk::DescriptorBufferInfo::default()
                .buffer(target.buffer)
                .range(vk::WHOLE_SIZE)];
            let write = [vk::WriteDescriptorSet::default()
                .dst_set(self.set)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&info)];
            self.device.update_descriptor_sets(&write, &[]);
            let d = &self.device;
            d.reset_command_buffer(self.cmd, vk::CommandBufferResetFlags::empty())
                .expect("reset");
            d.begin_command_buffer(self.cmd, &vk::CommandBufferBeginInfo::default())
                .expect("begin");
            d.cmd_bind_pipeline(self.cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
            d.cmd_bind_descriptor_sets(
                self.cmd,
                vk::PipelineBindPoint::COMPUTE,
                self.layout,
                0,
                &[self.set],
                &[],
            );
            d.cmd_push_constants(
                self.cmd,
                self.layout,
                vk::ShaderStageFlags::COMPUTE,
                0,
                &push.to_le_bytes(),
            );
            d.cmd_dispatch(self.cmd, groups, 1, 1);
            let host = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::SHADER_WRITE)
                .dst_access_mask(vk::AccessFlags::HOST_READ);
            d.cmd_pipeline_barrier(
                self.cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &[host],
                &[],
                &[],
            );
            d.end_command_buffer(self.cmd).expect("end");
            let cmds = [self.cmd];
            d.queue_submit(
                self.queue,
                &[vk::SubmitInfo::default().command_buffers(&cmds)],
                self.fence,
            )
            .expect("submit");
            d.wait_for_fences(&[self.fence], true, u64::MAX).expect("wait");
            d.reset_fences(&[self.fence]).expect("reset fence");
        }
    }

    /// The writer over `groups` workgroups; whether every group read its own writes back.
    pub fn write_shared(&self, seed: u32, groups: u32) -> bool {
        let back = self.mapped(u64::from(groups * SHARED_WORDS) * 4);
        self.run(self.writer, &back, seed, groups);
        // SAFETY: the mapping holds `len` words and the device is done with it.
        let words = unsafe { std::slice::from_raw_parts(back.words, back.len) };
        let ok = words.chunks(SHARED_WORDS as usize).all(|g| {
            g.iter()
                .enumerate()
                .all(|(i, w)| *w == pattern(seed, SHARED_WORDS - 1 - i as u32))
        });
        self.release(back);
        ok
    }

    /// The listener over `groups` workgroups: the words of the writer's pattern for `seed`
    /// found at their own index in the shared memory the groups never wrote.
    pub fn listen_shared(&self, seed: u32, groups: u32) -> u64 {
        let dump = self.mapped(u64::from(groups * SHARED_WORDS) * 4);
        self.run(self.listener, &dump, 0, groups);
        // SAFETY: as in `write_shared`.
        let words = unsafe { std::slice::from_raw_parts(dump.words, dump.len) };
        let found = count(words, seed);
        self.release(dump);
        found
    }

    /// Allocates `bytes` of device memory, fills it with the pattern through a mapping and
    /// frees it.
    pub fn write_global(&self, seed: u32, bytes: u64) {
        let m = self.mapped(bytes);
        // SAFETY: the mapping holds `len` words.
        let words = unsafe { std::slice::from_raw_parts_mut(m.words, m.len) };
        for (i, w) in words.iter_mut().enumerate() {
            *w = pattern(seed, i as u32 % SHARED_WORDS);
        }
        self.release(m);
    }

    /// Allocates `bytes` of device memory and counts the words of the pattern in it.
    pub fn listen_global(&self, seed: u32, bytes: u64) -> u64 {
        let m = self.mapped(bytes);
        // SAFETY: the mapping holds `len` words.
        let words = unsafe { std::slice::from_raw_parts(m.words, m.len) };
        let found = count(words, seed);
        self.release(m);
        found
    }
}

/// Words equal to the pattern at their index modulo [`SHARED_WORDS`].
fn count(words: &[u32], seed: u32) -> u64 {
    words
        .iter()
        .enumerate()
        .filter(|(i, w)| **w == pattern(seed, *i as u32 % SHARED_WORDS))
        .count() as u64
}

impl Drop for Dev<'_> {
    fn drop(&mut self) {
        let d = &self.device;
        // SAFETY: the device is idle; each handle is destroyed once.
        unsafe {
            let _ = d.device_wait_idle();
            d.destroy_pipeline(self.writer, None);
            d.destroy_pipeline(self.listener, None);
            d.destroy_descriptor_pool(self.dpool, None);
            d.destroy_pipeline_layout(self.layout, None);
            d.destroy_descriptor_set_layout(self.set_layout, None);
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.pool, None);
            d.destroy_device(None);
        }
    }
}
